"""`python -m image_service`: the `image-service` command."""

from image_service.cli import main

main()
