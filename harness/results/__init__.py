"""Results: what a run and a measurement are (schema), the SQLite store derived from that
schema, the journal that keeps samples a full disk could not take, and the history over runs."""
