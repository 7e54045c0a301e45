"""Commands that read and show: inspect (figures of trace files), prompt (the exact text a model reads), report
(one HTML page of a run). They write no run folder."""
