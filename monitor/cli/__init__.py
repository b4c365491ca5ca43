"""The command line: the entry point (main), `status` / `protect` (status), the audit views
(audit), the `check` report (check) and the `demo` (demo)."""
