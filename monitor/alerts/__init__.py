"""From evaluations to messages: the alert state machine (machine), the words and numbers of
messages (words), and the monitor's messages about itself (selfwatch)."""
