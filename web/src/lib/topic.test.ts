import { describe, expect, it } from 'vitest';
import { filterProblem, topicMatches, topicProblem } from './topic';

describe('topicMatches', () => {
  it.each([
    ['demo/#', 'demo/a/b', true],
    ['demo/#', 'demo', true],
    ['demo/+', 'demo/a', true],
    ['demo/+', 'demo/a/b', false],
    ['+/+', 'a/b', true],
    ['a/b', 'a/b', true],
    ['a/b', 'a/c', false],
    ['#', '$SYS/uptime', false],
    ['+/uptime', '$SYS/uptime', false],
    ['$SYS/#', '$SYS/uptime', true],
    ['a/+/c', 'a//c', true],
  ])('%s vs %s is %s', (filter, topic, expected) => {
    expect(topicMatches(filter, topic)).toBe(expected);
  });
});

describe('checks', () => {
  it('refuses misplaced wildcards in filters', () => {
    expect(filterProblem('a/#/b')).toMatch(/#/);
    expect(filterProblem('a/b+')).toMatch(/\+/);
    expect(filterProblem('')).toBeDefined();
    expect(filterProblem('a/+/#')).toBeUndefined();
  });
  it('refuses wildcards and $ topics for publishing', () => {
    expect(topicProblem('a/+')).toBeDefined();
    expect(topicProblem('$SYS/x')).toBeDefined();
    expect(topicProblem('demo/hello')).toBeUndefined();
  });
});
