"""Networks: the swap model (`model`: generator + appearance encoder, its config and its
guidance), the SAMAE generator, the appearance encoder and the patch discriminator."""
