"""Training of the rerankers: the AR teacher on logged pages, sequential knowledge distillation into the NAR
student, and online list-wise RL (LDRO, against GRPO) on the simulator's drifting streams."""
