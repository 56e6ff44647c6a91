"""Generation metrics before and after fine-tuning."""
