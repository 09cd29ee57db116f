"""The ground truth: stand-alone accuracy of sampled architectures, and how well a supernet ranks them."""
