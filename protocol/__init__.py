"""The device wire contract: every frame, tool action, table and domain, and why a tool call fails.

It depends on nothing of the server, so the tools, the agents, the server and
any client can share it (`docs/protocol.md` is its prose).
"""
