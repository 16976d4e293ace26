import torch

# The test networks are small: extra intra-op threads only spin-wait, which makes
# steps 10-100x slower whenever another process shares the (2) CI cores.
torch.set_num_threads(1)
