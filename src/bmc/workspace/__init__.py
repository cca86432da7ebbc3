"""The workspace: project paths and atomic writes, path confinement, the file tools the
model is given, and where the packaged skills, prompts and fixtures live."""
