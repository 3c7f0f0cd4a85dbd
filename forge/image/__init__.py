"""OCI images as immutable values (model), how forge builds them, and how they are read back.

    build.ImageSpec, build.build_image(spec) -> model.Image      daemonless, reproducible
    read.load_image(path) -> model.Image                        OCI layout dir or docker archive
    context.write_build_context(spec, dir)                      the Dockerfile.scratch route
    floor.build_floor(out_dir) -> Path                          the static C floor (images/floor)
"""
