"""Model images: build context generation, docker-py build, local base images, registry push.

Generating the build context (:mod:`model_packages.image.context`) is separate from running the
build (:mod:`model_packages.image.build`), so a cloud build service can take the same context.
"""
