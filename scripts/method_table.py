"""Print the README's method table from the registry (name, family, paper, needs, hyperparameter defaults)."""

from kdviz.distill import list_methods


def main() -> None:
    print("| name | family | paper | needs | hyperparameters (defaults) |")
    print("|---|---|---|---|---|")
    for cls in list_methods():
        hparams = ", ".join(f"{k}={hp.default:g}" for k, hp in cls.hyperparameters.items()) or "—"
        paper = cls.card.paper.replace("|", "/")
        print(f"| `{cls.name}` | {cls.card.family} | {paper} | {cls.requirements()} | {hparams} |")


if __name__ == "__main__":
    main()
