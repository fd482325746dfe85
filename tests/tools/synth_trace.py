"""A synthetic `loom trace` (docs/trace.md's JSON) for the tools' tests:
one SM, every task of a step in the order given, each traced step
`step_ns` after the one before, its four stamps at its span's ends (the
wait and the release take no time)."""


def synth_trace(ops, tasks, spans, steps=2, step_ns=200_000):
    """ops, tasks: the trace's records; spans[i]: task i's (run begin, end)
    in ns after its step's start."""
    stamps = []
    for s in range(steps):
        row = []
        for a, b in spans:
            row += [s * step_ns + a, s * step_ns + a, s * step_ns + b, s * step_ns + b]
        stamps.append(row)
    return {"format": "loom-trace", "version": 2, "backend": "cuda", "clock": "globaltimer ns",
            "n_sms": 1, "first_step": 4, "steps": steps, "steps_run": steps + 4,
            "truncated": True, "bandwidth": None, "ops": ops, "counters": [], "tasks": tasks,
            "sm_tasks": [list(range(len(tasks)))], "t": stamps}
