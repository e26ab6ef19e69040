"""Starting the pipeline: locally with kfp.local, or on a Kubeflow Pipelines cluster. The only library layer that imports driftlab.pipelines."""
