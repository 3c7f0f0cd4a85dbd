"""Publishers take an Image value and put it somewhere (ko's seam between build and publish)."""
