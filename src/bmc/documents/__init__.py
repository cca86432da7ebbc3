"""The documents' rules: the skills and the stage table they define, the schemas of the
governed documents, validation and grounding, the gate files, status, rendering and import."""
