"""Replications of published studies (``pedagogym replicate <study> --out DIR``)."""
from __future__ import annotations

STUDIES = {
    "reddy2017": "Reddy, Levine & Dragan (2017): EFC/HLR/DASH x L/LL, Random/Leitner/SM-2/Threshold/Memorize/RL (PPO)",
}
