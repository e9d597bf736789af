"""tqk.bench: kernel sweep, whole-model benchmark and MiniLM accuracy check (see __main__)."""
