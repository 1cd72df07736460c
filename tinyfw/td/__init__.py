"""Task-specific distillation (TD), the layer ``stage=task`` wires and ``stage=prune``'s recovery
reuses: what the phases train on (``setup``), where the student starts (``start``), the phases
themselves (``phases``: TD step 1, step 2, fine-tuning), the student's result metrics
(``evaluate``) and its saved form (``save``). It reads the composed config and sits above
``artefacts`` (the cached teacher, GD student, augmented set, teacher logits, step-1 student)."""
