"""Data layers: ``roi_data_layer.layer.RoIDataLayer`` and ``OHEMDataLayer``.

The module name is py-faster-rcnn's, so prototxts that say
``python_param { module: 'roi_data_layer.layer' layer: 'RoIDataLayer' }`` load unchanged.
The layers themselves arrive with the data and OHEM issues.
"""
