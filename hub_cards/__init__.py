"""Hub card templates (model, dataset, metric). Installed as the package data `hf_docre.hub_cards`; read them with
`hf_docre.model_card.read_template(name)`."""
