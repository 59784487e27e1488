//! A BERT and its pooling as one sentence backbone: token batches in, sentence vectors out. The
//! default encoder of SimCSE; any other `Backbone<Input = TokenBatch>` serves as well.

use crate::bert::Bert;
use crate::pooling::Pooling;
use crate::tokenizer::TokenBatch;
use candle_core::Tensor;
use contrastive_core::train::ExtraState;
use contrastive_core::{Backbone, Result};

/// A BERT whose token states are pooled into one vector per sentence.
pub struct PooledBert {
    /// The transformer.
    pub bert: Bert,
    /// How its token states become a sentence vector.
    pub pooling: Pooling,
}

impl Backbone for PooledBert {
    type Input = TokenBatch;

    fn encode(&self, tokens: &TokenBatch, train: bool) -> candle_core::Result<Tensor> {
        let states = self.bert.forward_t(&tokens.ids, &tokens.type_ids, &tokens.attention_mask, train)?;
        self.pooling.forward_t(&states, &tokens.attention_mask, train)
    }

    /// Each layer's output cut from the graph as soon as the next layer has read it.
    fn encode_without_graph(&self, tokens: &TokenBatch, train: bool) -> candle_core::Result<Tensor> {
        let states = self.bert.forward_without_graph(&tokens.ids, &tokens.type_ids, &tokens.attention_mask, train)?;
        Ok(self.pooling.forward_t(&states, &tokens.attention_mask, train)?.detach())
    }

    fn dim(&self) -> usize {
        self.bert.config().hidden_size
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::to_value(self.bert.config()).unwrap_or(serde_json::Value::Null)
    }

    /// The dropout streams' positions, so a resume draws the same masks.
    fn extra_state(&self) -> Result<ExtraState> {
        Ok(ExtraState { tensors: Default::default(), json: self.bert.dropout_state() })
    }

    fn load_extra_state(&mut self, state: ExtraState) -> Result<()> {
        self.bert.load_dropout_state(&state.json)
    }
}
