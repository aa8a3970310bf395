"""The published numbers every report is measured against (docs/s5.md, section 9 "Paper settings per task").

Kept in one place so the table, the plots and the README quote the same figures.
"""

# LRA tasks in the paper's column order; keys are `dataset.name` values.
TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")
TASK_TITLES = {"listops": "ListOps", "text": "Text", "retrieval": "Retrieval", "image": "Image",
               "pathfinder": "Pathfinder", "pathx": "Path-X"}

# S5 test accuracy (%) and the number of training epochs of its run script.
PAPER_ACCURACY = {"listops": 62.15, "text": 89.31, "retrieval": 91.40, "image": 88.00, "pathfinder": 95.33,
                  "pathx": 98.58}
PAPER_EPOCHS = {"listops": 40, "text": 35, "retrieval": 20, "image": 250, "pathfinder": 200, "pathx": 75}
PAPER_AVERAGE = 87.46

# Published LRA averages (%), for context in the summary plot.
PUBLISHED_AVERAGES = {"S4": 86.09, "Liquid-S4": 87.32, "S5 (paper)": PAPER_AVERAGE, "S5-PTD": 87.61,
                      "Mega": 88.21}


def task_title(task: str) -> str:
    return TASK_TITLES.get(task, task)
