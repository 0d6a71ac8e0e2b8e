"""RerankService: orders a candidate list into the slots of a page (Dual-Rerank NAR student, AR teacher)."""
