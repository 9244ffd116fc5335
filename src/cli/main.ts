console.log('openelm');
