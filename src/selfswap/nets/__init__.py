"""Networks: the SAMAE generator, the appearance encoder and the patch discriminator."""
