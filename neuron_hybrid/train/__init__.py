"""Training learned currents: closed-form warm starts, teacher forcing, closed-loop fine-tuning."""
