// --json never prints NaN or Infinity: a non-finite logit is an error naming its position.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkFiniteRows } from '../../src/cli/finite.ts';

test('non-finite logits are an error naming the position and token; finite rows pass', () => {
  const rows = [new Float32Array([0.5, -1, 3]), new Float32Array([1, NaN, 2])];
  assert.throws(() => checkFiniteRows(rows, (i) => i), { message: /^position 1: the logit of token 1 is NaN, not a finite number/ });
  assert.throws(() => checkFiniteRows([new Float32Array([Infinity])], () => 41), { message: /^position 41: the logit of token 0 is Infinity/ });
  assert.throws(() => checkFiniteRows([new Float32Array([0, -Infinity])], () => 0), { message: /^position 0: the logit of token 1 is -Infinity/ });
  assert.doesNotThrow(() => checkFiniteRows([new Float32Array([0, -3.4e38, 3.4e38])], () => 0));
});
