"""One script per DVC stage. dvc.yaml runs them as `python -m stages.<name>`: each checkout imports its own package."""
