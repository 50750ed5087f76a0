"""Data sets (images in [0, 1], 2-D toys) and the [0, 1] <-> model-range scalers."""
from data.datasets import data_shape, fit_to_data, get_dataset, get_eval_dataset
from data.errors import DatasetUnavailable, UnreadableImage
from data.scaling import data_range, get_data_inverse_scaler, get_data_scaler, get_samples_to_data
from data.transforms import uniform_dequantize

__all__ = ['data_range', 'data_shape', 'fit_to_data', 'get_dataset', 'get_eval_dataset', 'uniform_dequantize', 'get_data_scaler', 'get_data_inverse_scaler', 'get_samples_to_data', 'DatasetUnavailable',
           'UnreadableImage']
