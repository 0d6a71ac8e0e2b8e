"""MaskService: extracts, edits, composes and synthesises mask sequences."""
