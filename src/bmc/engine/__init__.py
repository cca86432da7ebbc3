"""The engine: the loop, the conversation's rules, sessions and their journal, the project's
lock, the agreement flow, and the API every surface drives (`bmc.engine.api`).

Nothing here imports rich or click: a surface renders the engine's events."""
