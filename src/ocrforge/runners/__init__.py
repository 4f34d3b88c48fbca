"""What each CLI command does, as plain functions (the Python API re-exports them)."""
