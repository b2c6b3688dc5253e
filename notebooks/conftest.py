"""pytest (nbval) over notebooks/: leave out what cannot run on a laptop.

imagenet/subsets.ipynb needs an ILSVRC-2012 image folder and a GPU; it is committed unexecuted.
"""
collect_ignore = ["imagenet/subsets.ipynb"]
