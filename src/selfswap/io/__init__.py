"""Reading and writing images and other files safely."""
