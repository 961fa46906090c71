"""Scoring: counts responses per segment and day, and answers NPS questions from those counts."""
