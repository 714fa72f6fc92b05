"""The base everything stands on: the config schema, run directories, model loading, built-in assets."""
