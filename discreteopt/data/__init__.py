"""Offline data: seeded generators that mimic the reference data sets, and loaders for the real files."""

from .beer import load_beer, read_annotations, read_reviews
from .digits import load_digits_data
from .pyepo_knapsack import KnapsackData, generate_knapsack
from .pyepo_shortest_path import PtOData, generate_shortest_path, grid_arcs
from .pyepo_tsp import generate_tsp, tsp_edges
from .synthetic_text import generate_synthetic_text
from .text import TextData, Vocabulary
from .warcraft import TERRAINS, WarcraftData, generate_warcraft, load_warcraft

__all__ = ["TERRAINS", "KnapsackData", "PtOData", "TextData", "Vocabulary", "WarcraftData", "generate_knapsack",
           "generate_shortest_path", "generate_synthetic_text", "generate_tsp", "generate_warcraft", "grid_arcs",
           "load_beer", "load_digits_data", "load_warcraft", "read_annotations", "read_reviews", "tsp_edges"]
