"""Small widgets shared by the panels: number fields with error marking, image views, a plot
style, and a background runner for short computations."""
