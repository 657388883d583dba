"""The background daemon: scheduled jobs, incremental sync, queued runs, health and metrics.

    jobs      `[jobs.NAME]` definitions → RunRequests; validated against the stores at start
    schedule  when a job is due: `every` intervals and cron expressions, timezone-aware
    turn      one turn of a job: finish its unfinished run, plan and apply a new one, move its mark
    runner    the loop: resume at start, run due jobs and queued runs, stop gracefully on a signal
    status    what `/status` and `syncd jobs` show, read from the journal
    metrics   `/metrics` in the Prometheus text format, counted from the journal
    web       the status HTTP server (/healthz, /status, /metrics)
    logs      text or JSON-lines logging on stderr

The OS file locks (one daemon per journal, one run of a job at a time) live in syncd/locks.py,
beside the run lock that `syncd resume` takes too.

Needs the `daemon` extra (cronsim, prometheus-client, tzdata); the rest of syncd does not.
"""
