"""The settings: one validated object from a YAML file and the environment (settings), read
strictly (yaml_reader, env), with errors that name the file, the line or the variable (errors);
shared field types (types, durations)."""
