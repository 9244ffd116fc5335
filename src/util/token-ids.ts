// The one check of token ids against a vocabulary, shared by the engine and the generation loop
// (which checks the whole prompt before prefilling only the part the KV cache lacks, so an error
// names the id's index in the prompt, not in the part).

export function checkTokenIds(ids: readonly number[], vocabSize: number): void {
  ids.forEach((id, i) => {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new Error(`token id ${id} at index ${i} is outside the vocabulary [0, ${vocabSize})`);
    }
  });
}
