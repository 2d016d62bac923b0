"""A BERT encoder, the mean of its last hidden states over real tokens, and a linear classifier: the `mean` head
that bert-compress trains. Written beside the weights so that transformers runs exactly that model:

    from transformers import pipeline
    pipeline("text-classification", model=DIR, trust_remote_code=True)

Without `trust_remote_code=True` transformers refuses the directory rather than open it as a
`BertForSequenceClassification`, whose [CLS] pooler and head would be random.
"""

import torch
from transformers import BertConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class BertCompressMeanConfig(BertConfig):
    model_type = "bert_compress_mean"


class BertCompressMeanForSequenceClassification(BertPreTrainedModel):
    config_class = BertCompressMeanConfig
    base_model_prefix = "bert"

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        self.classifier = torch.nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        logits = self.classifier(pooled)
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)
