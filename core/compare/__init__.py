"""Model agreement without ground truth, runtime agreement, review statistics."""
