"""The orchestrator program: what runs inside a run's Batch job (orchestrator/entrypoint.sh sequences its
steps: prepare, started, command, watch, finish, outcome). Never imported by the functions."""
