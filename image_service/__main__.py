"""`python -m image_service`: the `image-service` command."""

from image_service.programs.cli import main

main()
