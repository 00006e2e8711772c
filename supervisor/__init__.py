"""The job supervisor: long work as detached worker processes that anyone can follow via files.

`supervisor.jobs` is the protocol (job directories, spawning, signals, heartbeats, status, the
*died* verdict, watching, services); `supervisor.service_worker` is the worker of a service job.
Standard library + tomlkit only; of the project it uses `sessions` (the workspace layout, the id
rule, the atomic write) and nothing else, so every stage's job sits on it. See
docs/architecture.md.
"""
