"""`bmc eval`: a skill measured against a model, case by case (a surface, like the terminal).

Each case of `evals/<skill>/evals.json` runs in a scratch copy of its fixture workspace
through the engine's own API (`engine.api.start`), with the consultant's lines played from
the case. The run is graded by bmc's deterministic checks, then, optionally, each
expectation by a model-graded rubric; the results, side by side with a baseline, are
written as JSON and as a static HTML report. Nothing of a case but its prompt and the
consultant's lines ever reaches the model under test (see docs/eval.md).
"""
