"""``rpn.proposal_layer``: module name as in py-faster-rcnn, so its prototxts load unchanged.

The layer arrives with the RPN issue; this module reserves the name.
"""
