# Stage "report": the findings report, claim by claim, from the summaries of every stage.


rule findings:
    input:
        geometry="results/geometry/summary.parquet",
        lines="results/interpolation/line_summary.parquet",
        region="results/interpolation/region_summary.parquet",
        centroid="results/centroid/summary.parquet",
        comparison="results/centroid/comparison.parquet",
        models="results/models/metrics.parquet",
        manifest="results/weights/manifest.json",
        code=code("findings"),
    output:
        md=report("results/report/findings.md", caption="report/findings.rst", category="Findings"),
        json="results/report/findings.json",
        metrics="results/report/metrics.json",
        centroid_csv="results/report/centroid_gain.csv",
    log:
        "logs/report/findings.log",
    shell:
        "python -m workflow_scripts.findings --geometry {input.geometry} --lines {input.lines} "
        "--region {input.region} --centroid {input.centroid} --comparison {input.comparison} "
        "--models {input.models} --manifest {input.manifest} --out-md {output.md} --out-json {output.json} "
        "--out-metrics {output.metrics} --out-centroid-csv {output.centroid_csv} > {log} 2>&1"
