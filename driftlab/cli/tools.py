"""``driftlab compile`` and ``driftlab profiles``: the pipeline YAML, and what this machine can run."""

from __future__ import annotations

EXIT_OK = 0


def cmd_compile(args) -> int:
    from driftlab.launch.submit import compile_pipeline, image_registry

    registry = image_registry(args.image_registry)  # SubmitError (bad input): one line, exit 2
    compile_pipeline(args.output, registry=registry)
    print(f"compiled pipeline: {args.output} (images from {registry})")
    return EXIT_OK


def cmd_profiles(args) -> int:
    from driftlab.config.profiles import auto_profiles, supported_isas

    print(f"CPU ISAs oneDNN can use here: {', '.join(supported_isas()) or 'none detected'}")
    for p in auto_profiles():
        print(f"  {p.name:<18} isa={p.isa or 'default'} onednn={p.onednn} "
              f"threads={p.intra_op_threads}/{p.inter_op_threads}")
    return EXIT_OK
