# Stage "weights": every model's body as one float32 vector, in the manifest's parameter order,
# with a sidecar JSON (model id, dataset, task, seed, sha256 of the vector) that later stages key on.


rule flatten_pretrained:
    input:
        base=BASE_FILES,
        code=code("weights"),
    output:
        vector="results/weights/pretrained.npy",
        info="results/weights/pretrained.json",
        manifest="results/weights/manifest.json",
    params:
        base_dir=lambda w, input: os.path.dirname(input.base[0]),
    log:
        "logs/weights/pretrained.log",
    shell:
        "python -m workflow_scripts.weights pretrained --base-dir {params.base_dir} --out {output.vector} "
        "--manifest {output.manifest} > {log} 2>&1"


rule flatten_model:
    input:
        weights="results/models/{dataset}-s{seed}/model.safetensors",
        manifest="results/weights/manifest.json",
        code=code("weights"),
    output:
        vector="results/weights/{dataset}-s{seed}.npy",
        info="results/weights/{dataset}-s{seed}.json",
    params:
        model_dir=lambda w, input: os.path.dirname(input.weights),
        task=lambda w: config["datasets"][w.dataset]["task"],
    log:
        "logs/weights/{dataset}-s{seed}.log",
    benchmark:
        "logs/benchmarks/flatten_model/{dataset}-s{seed}.tsv"
    shell:
        "python -m workflow_scripts.weights model --model-dir {params.model_dir} --manifest {input.manifest} "
        "--out {output.vector} --model-id {wildcards.dataset}-s{wildcards.seed} --dataset {wildcards.dataset} "
        "--task {params.task} --seed {wildcards.seed} > {log} 2>&1"
