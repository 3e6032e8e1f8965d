"""Downstream tasks on the Spotscape representation (scanpy-style functional helpers)."""
from .._cluster import estimate_n_domains
from ._align import align, label_transfer, mutual_nearest_neighbors, robust_rigid_transform
from ._correct import correct_slices, mnn_correct
from ._de import condition_de
from ._denoise import denoise, imputation_scores, mask_nonzero, neighbour_mean, pca_reconstruction
from ._domains import domains, refine_labels
from ._trajectory import trajectory

__all__ = ["align", "condition_de", "correct_slices", "denoise", "domains", "estimate_n_domains", "imputation_scores", "label_transfer",
           "mask_nonzero", "mnn_correct", "mutual_nearest_neighbors", "neighbour_mean", "pca_reconstruction", "refine_labels",
           "robust_rigid_transform", "trajectory"]
